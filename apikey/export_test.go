package apikey

// Checksum exposes the checksum encoding to the black-box tests.
var Checksum = checksum

// CRCString exposes the allocation-free CRC32 to the black-box tests.
var CRCString = crcString
