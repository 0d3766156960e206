"""Browser components (Panel ``JSComponent``s) shared by pages."""
