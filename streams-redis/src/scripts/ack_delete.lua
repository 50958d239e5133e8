-- Acknowledges entries and deletes them (a group's private retry stream).
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2..]: ids.
-- Returns how many were pending. Ids go in chunks: Lua's unpack has a
-- limit of a few thousand values.
local acked = 0
local chunk = 1000
for first = 2, #ARGV, chunk do
  local last = math.min(first + chunk - 1, #ARGV)
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, first, last))
  redis.call('XDEL', KEYS[1], unpack(ARGV, first, last))
end
return acked
