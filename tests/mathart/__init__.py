"""Tests of the mathart family."""
