"""Importers: build manifest rows from the folder layouts users have, one module per layout.

Each importer stores absolute paths, decodes every image and mask once to report a bad file
by name, and returns rows with split `unassigned` unless the layout fixes one.
"""

from lineinspect.shared.datasets.importers.folder import import_folder
from lineinspect.shared.datasets.importers.mvtec import import_mvtec
from lineinspect.shared.datasets.importers.paired import import_paired
from lineinspect.shared.datasets.importers.voc import import_voc

__all__ = ["import_folder", "import_mvtec", "import_paired", "import_voc"]
