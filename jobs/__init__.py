"""Background work: RQ job functions (thin: ids in, call ``recovery``) and the schedule."""
