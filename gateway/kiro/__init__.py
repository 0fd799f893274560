"""The Kiro client: everything that speaks HTTP to Kiro or AWS, and nothing of Django.

- `transport`, `connection`, `pool`, `proxy`: the lean HTTP/1.1 transport under httpx
  (httptools parsing, an O(1) connection pool, HTTP CONNECT and SOCKS5 tunnels);
- `client`: the calls (generate, MCP, REST, profiles, the proxy probe) and the pooled clients;
- `auth`: token refresh and the login flows' grants;
- `types`: the plain values it takes (`CredentialAccess`, `KiroConfig`).

It may import `gateway.protocol` and nothing else of the project (import-linter, pyproject.toml):
`credentials` builds its inputs from the database and stores its answers.
"""
