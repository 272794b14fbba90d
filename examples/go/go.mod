module github.com/memwatch/memwatch/examples/go

go 1.21

require github.com/memwatch/memwatch/bindings-go v0.0.0

replace github.com/memwatch/memwatch/bindings-go => ../../bindings-go
