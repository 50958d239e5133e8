-- Adds an entry, then trims the stream by length and/or age (server clock).
-- KEYS[1]: the stream.
-- ARGV[1]: number of trims n; ARGV[2 .. 1+3n]: trims (see apply_trims);
-- then the entry's fields as name, value pairs.
-- Returns the new entry's id.
local n = tonumber(ARGV[1])
return add_trimmed(KEYS[1], 2, n, rest(2 + 3 * n))
