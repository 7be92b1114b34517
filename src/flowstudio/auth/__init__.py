"""Authentication primitives: password hashing, tokens, roles and permissions, secret encryption."""
