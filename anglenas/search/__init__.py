"""Architecture search inside a (shrunk) space: evolutionary search and its candidate evaluators."""
