module github.com/apikit/apikit

go 1.26
