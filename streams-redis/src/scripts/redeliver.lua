-- Delivers again entries one consumer still holds (XCLAIM to itself): each
-- counts a delivery and its idle time starts again. Entries not pending for
-- the consumer are left alone, and so are entries whose delivery count is
-- not the expected one (they were delivered since); ids whose entries are
-- gone are reported and stay pending.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3..]: pairs of id and expected
-- delivery count ('': any).
-- Returns {entries, counts, deleted}.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local entries, counts, deleted = {}, {}, {}
for i = 3, #ARGV, 2 do
  local id, expected = ARGV[i], ARGV[i + 1]
  local p = redis.pcall('XPENDING', key, group, id, id, 1, consumer)
  if type(p) == 'table' and p.err then
    return redis.error_reply(p.err)
  end
  if #p > 0 and (expected == '' or tonumber(p[1][4]) == tonumber(expected)) then
    if #redis.call('XRANGE', key, id, id) == 0 then
      deleted[#deleted + 1] = id
    else
      local claimed = redis.call('XCLAIM', key, group, consumer, 0, id)
      if #claimed > 0 then
        entries[#entries + 1] = claimed[1]
        counts[#counts + 1] = tonumber(p[1][4]) + 1
      end
    end
  end
end
return {entries, counts, deleted}
