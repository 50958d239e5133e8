-- Adds a copy of an entry to another stream and deletes the entry, in one
-- step, only if the entry exists (a second run finds it gone and writes
-- nothing). No group is involved: the source is read as a plain stream.
--
-- KEYS[1]: the source stream. KEYS[2]: the target stream.
-- ARGV[1]: the entry id, in full (`<ms>-<seq>`).
-- ARGV[2..]: the copy's fields as name, value pairs.
--
-- Returns the copy's id, or false when the entry does not exist.
local source, target, id = KEYS[1], KEYS[2], ARGV[1]

local found = redis.call('XRANGE', source, id, id)
if #found == 0 or found[1][1] ~= id then
  return false
end
local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local new_id = redis.call('XADD', target, '*', unpack(fields))
redis.call('XDEL', source, id)
return new_id
