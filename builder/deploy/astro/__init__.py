"""Deploys to Astro through its Deploy API (platform v1beta1), as `astro deploy` makes them.

    settings.py  the API URL, the token ($ASTRO_API_TOKEN or `airbuild login --astro`), the Organization
    api.py       the Deploy API client: the Deployment, create a deploy, upload the DAG bundle, finalize
    images.py    Astro's image registry: the repository a deploy names, the token as its password
    bundle.py    the reproducible DAG bundle (.tar.gz of dags/), made from the image's DAG layer
    deploy.py    the flow: deploy type, validation before anything is created, push, upload, finalize, record
"""
