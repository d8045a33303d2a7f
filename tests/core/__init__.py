"""Tests of cam_callback.core, a file per module (a package: test file names repeat across floors)."""
