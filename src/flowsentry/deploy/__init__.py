"""Deployment: container images of the packaged Bento (`flowsentry container ...`)."""
