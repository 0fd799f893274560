"""The admin of the credentials app, one module per model admin, the credential console's
pages in modules of their own (mixed into CredentialAdmin and routed by its get_urls):

- `credential`: the credential list and change page;
- `kiro_files`, `batch`, `console`, `login_pages`: the console pages (kiro-rs files, batch
  import, balance / models / model test / overage, login flows);
- `actions`: the credential list's bulk actions;
- `client_key`, `groups`, `settings`, `proxy`, `jobs`: the other model admins;
- `common`: what they share.
"""

from credentials.admin import (  # noqa: F401 (importing a module registers its model admin)
    client_key,
    credential,
    groups,
    jobs,
    proxy,
    settings,
)
