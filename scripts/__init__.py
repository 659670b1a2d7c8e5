"""The command lines of the `petpipe` command; each is click parsing plus one library call."""
