"""What any front end watches: the watcher thread, its snapshots, the lab, GPU readings."""
