module frugal.dev/frugal

go 1.19
