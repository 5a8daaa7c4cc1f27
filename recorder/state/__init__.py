"""What a running recorder publishes for others to read: immutable snapshots and the protocols over them.

`snapshots` holds the snapshots of one camera, the storage, transcoding and the whole recorder, published
whole after every change so readers need no lock; `ports` the protocols the exporter types against, so the
HTTP side never imports the daemon, its storage or its supervisors.
"""
