"""The chat demo served by a Starlette application, Bayeux mounted at /faye."""
