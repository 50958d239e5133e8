-- Sets the idle time of entries pending for one consumer, without counting
-- a delivery (XCLAIM ... IDLE JUSTID). Entries pending for another consumer,
-- or not pending at all, are left alone.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: idle ms. ARGV[4..]: ids.
-- Returns the ids that were updated.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local owned = {}
for i = 4, #ARGV do
  local p = redis.pcall('XPENDING', key, group, ARGV[i], ARGV[i], 1, consumer)
  if type(p) ~= 'table' or p.err then
    return {}
  end
  if #p > 0 then
    owned[#owned + 1] = ARGV[i]
  end
end
if #owned == 0 then
  return {}
end
local args = {key, group, consumer, 0}
for _, id in ipairs(owned) do
  args[#args + 1] = id
end
args[#args + 1] = 'IDLE'
args[#args + 1] = ARGV[3]
args[#args + 1] = 'JUSTID'
return redis.call('XCLAIM', unpack(args))
