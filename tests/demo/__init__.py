"""Tests of cam_callback.demo, a file per module (a package: test file names repeat across floors)."""
