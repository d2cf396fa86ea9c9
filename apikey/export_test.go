package apikey

// Checksum exposes the checksum encoding to the black-box tests.
var Checksum = checksum

// CRCString exposes the allocation-free CRC32 to the black-box tests.
var CRCString = crcString

// ParseLegacyBearer exposes the legacy credential extractor to the fuzz
// target.
var ParseLegacyBearer = parseLegacyBearer

// NormalizeMetadata exposes the metadata check to the fuzz target.
var NormalizeMetadata = normalizeMetadata
