-- Sets the idle time of entries pending for one consumer, without counting
-- a delivery (XCLAIM ... IDLE JUSTID to itself), and optionally gives one
-- delivery back (RETRYCOUNT one less, not below 0): a hand-back is not a
-- delivery. Entries pending for another consumer, or not pending at all,
-- are left alone.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: idle ms. ARGV[4]: '1' to give
-- a delivery back. ARGV[5..]: ids.
-- Returns the ids that were updated.
local key, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local refund = ARGV[4] == '1'
local done = {}
for i = 5, #ARGV do
  local p = redis.pcall('XPENDING', key, group, ARGV[i], ARGV[i], 1, consumer)
  if type(p) ~= 'table' or p.err then
    return {}
  end
  if #p > 0 then
    local claimed
    if refund then
      local count = math.max(tonumber(p[1][4]) - 1, 0)
      claimed = redis.call('XCLAIM', key, group, consumer, 0, ARGV[i], 'IDLE', idle,
        'RETRYCOUNT', count, 'JUSTID')
    else
      claimed = redis.call('XCLAIM', key, group, consumer, 0, ARGV[i], 'IDLE', idle, 'JUSTID')
    end
    -- XCLAIM drops an id whose entry is gone from the pending list.
    if #claimed > 0 then
      done[#done + 1] = ARGV[i]
    end
  end
end
return done
