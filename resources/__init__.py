"""Bundled data (sample images, icons, example networks); installed as cnnplay.resources."""
