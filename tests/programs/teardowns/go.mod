module teardowns

go 1.19
