-- Trims a stream by length and/or age (server clock).
-- KEYS[1]: the stream. ARGV[1]: number of trims n; then the trims.
-- Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return apply_trims(KEYS[1], 2, tonumber(ARGV[1]))
