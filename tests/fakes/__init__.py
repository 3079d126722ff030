"""Local stand-ins for the chat services notifications go to: real HTTP servers on loopback that record calls."""
