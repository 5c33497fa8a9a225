"""Logins every protocol shares: the failed-login throttle and the cache of verified credentials."""
