"""Install-time tools (run before the project's virtualenv exists)."""
