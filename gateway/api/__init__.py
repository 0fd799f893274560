"""The edge: what clients talk to.

The Anthropic and OpenAI views, client-key authentication, the attempt loop (`dispatch`), the
web-search loop, health and metrics, and the last-resort error handler (`edge`). The top
layer of the gateway: it may use `usage`, `credentials`, `gateway.kiro` and `gateway.protocol`;
none of them imports it (docs/architecture.md)."""
