module github.com/memwatch/memwatch/bindings-go

go 1.21
