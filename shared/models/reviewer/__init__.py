"""The reviewer: grades how far a product mask can be trusted."""
