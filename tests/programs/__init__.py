"""Small programs that tests run in a child process (``python -m tests.programs.NAME``, from the repository)."""
