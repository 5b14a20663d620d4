"""Personal data protection: the payload codec, its codec server, actor identity checks."""
