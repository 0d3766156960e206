"""Huey side: the Huey instance built from settings, thin tasks that call engine, signal handlers."""
