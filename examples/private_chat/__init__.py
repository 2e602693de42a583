"""The private chat demo: only users who follow each other can talk."""
