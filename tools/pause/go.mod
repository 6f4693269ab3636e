module anvil.local/pause

go 1.22
