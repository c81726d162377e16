"""Use cases. Each public function is one database transaction (or a sequence of independent
ones, for batch jobs) and says which SplitledgerError subclasses it may raise."""
