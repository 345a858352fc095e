//! Sessions sharing a folder, outside deliveries, restarts, crashes.
