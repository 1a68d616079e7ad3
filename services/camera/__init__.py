"""camera: the camera simulator behind `lineinspect publish`: frames from a folder of images,
a video file, a manifest or the synthetic generator, at a frame rate, to topic `frames`."""
