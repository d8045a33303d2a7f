"""Tests of cam_callback.capture, a file per module (a package: test file names repeat across floors)."""
