-- Acknowledges entries and deletes them (a group's private retry stream).
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2..]: ids.
-- Returns how many were pending.
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
return acked
