"""An OCI distribution client: references, credentials, auth, pull and push.

    reference.py      parse and normalise `host[:port]/repo[:tag][@digest]` (Docker Hub short names too)
    docker_config.py  credentials where Docker keeps them: ~/.docker/config.json and credential helpers
    auth.py           Basic and Bearer-token authentication from a registry's WWW-Authenticate challenge
    retry.py          what is worth retrying and how: backoff, Retry-After, attempts and timeouts (also the Astro API's)
    client.py         HTTP with retries, backoff, timeouts, TLS policy and clear errors
    pull.py           fetch an image (index -> platform manifest -> config, layers) into the store
    push.py           upload what a registry lacks (HEAD, mount, monolithic or chunked resumable), then manifests
    blob_sources.py   which repositories of a registry are known to hold a blob (for cross-repository mounts)
    manifests.py      one repository's manifests and small blobs by digest: read and write, checked
    referrers.py      OCI 1.1 referrers (SBOMs, provenance): attach and list, through the API or the fallback tag
    copy.py           an image copied by digest between repositories or registries, with its referrers (promote)
"""
