"""The gateway: API keys, roles and model scopes, rate limits and quotas, audit."""
