module frugal.dev/examples/generate

go 1.19

require frugal.dev/frugal v0.0.0

replace frugal.dev/frugal => ../../bindings/go
