"""Backups and disaster recovery: archive format, snapshots, targets, retention, the manager."""
