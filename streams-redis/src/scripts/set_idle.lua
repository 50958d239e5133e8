-- Sets the idle time of entries pending for one consumer, without counting
-- a delivery (XCLAIM ... IDLE JUSTID to itself), and optionally gives one
-- delivery back (RETRYCOUNT one less, not below 0): a hand-back is not a
-- delivery. Entries pending for another consumer, or not pending at all,
-- are left alone, and so is an entry whose delivery count is not the
-- expected one (it was handed back already, or delivered again).
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: idle ms. ARGV[4]: '1' to give
-- a delivery back. ARGV[5..]: pairs of id and expected delivery count ('':
-- any).
-- Returns the ids that were updated. A missing key or group updates
-- nothing; an invalid id fails the call before anything is changed.
local key, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local refund = ARGV[4] == '1'
local held = {}
for i = 5, #ARGV, 2 do
  local p = redis.pcall('XPENDING', key, group, ARGV[i], ARGV[i], 1, consumer)
  if type(p) == 'table' and p.err then
    if string.sub(p.err, 1, 7) == 'NOGROUP' then
      return {}
    end
    return redis.error_reply(p.err)
  end
  held[#held + 1] = p
end
local done = {}
for n, p in ipairs(held) do
  local id, expected = ARGV[3 + 2 * n], ARGV[4 + 2 * n]
  if #p > 0 and (expected == '' or tonumber(p[1][4]) == tonumber(expected)) then
    local claimed
    if refund then
      local count = math.max(tonumber(p[1][4]) - 1, 0)
      claimed = redis.call('XCLAIM', key, group, consumer, 0, id, 'IDLE', idle,
        'RETRYCOUNT', count, 'JUSTID')
    else
      claimed = redis.call('XCLAIM', key, group, consumer, 0, id, 'IDLE', idle, 'JUSTID')
    end
    -- XCLAIM drops an id whose entry is gone from the pending list.
    if #claimed > 0 then
      done[#done + 1] = id
    end
  end
end
return done
