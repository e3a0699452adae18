module uvchanpeer

go 1.19
