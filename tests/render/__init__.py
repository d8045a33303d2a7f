"""Tests of cam_callback.render, a file per module (a package: test file names repeat across floors)."""
