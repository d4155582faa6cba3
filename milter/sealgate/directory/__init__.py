"""Where the certificates of people live: the `files` backend (embedded default), LDAP later."""
