"""The team's shared build cache, kept in an OCI registry repository.

Public: `remote` (RemoteCache: look up layer keys, fetch verified entries, publish new ones;
CacheSettings: where and how, from the manifest, the environment or the command line).
"""
