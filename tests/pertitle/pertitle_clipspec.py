"""Shape of the tiny test clips generated in conftest.py."""

W, H, FPS, SECONDS = 320, 180, 30, 2
FRAMES = FPS * SECONDS
