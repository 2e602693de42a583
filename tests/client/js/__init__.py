"""Node.js scripts for the client tests, and the runner of client.js's unit tests."""
