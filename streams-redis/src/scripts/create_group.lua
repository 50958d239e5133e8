-- Creates a group after a given entry when the stream's history reaches it
-- (the stream has given out that id), else from the beginning: a stream that
-- was lost and written anew since has nothing to skip.
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2]: the entry id.
-- Returns 1 when created, 0 when the group existed.
local key, group, after = KEYS[1], ARGV[1], ARGV[2]

-- The two parts of an id as digit strings without leading zeros. They are
-- compared as strings: as Lua numbers (doubles) they lose precision above
-- 2^53.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then
    return nil
  end
  return (string.gsub(ms, '^0+(%d)', '%1')), (string.gsub(seq, '^0+(%d)', '%1'))
end

-- -1, 0 or 1 as the decimal a is below, equal to or above b.
local function compare(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  if a == b then
    return 0
  end
  return a < b and -1 or 1
end

local start = '0'
local info = redis.pcall('XINFO', 'STREAM', key)
if type(info) == 'table' and info.err and not missing(info) then
  return redis.error_reply(info.err)
end
if type(info) == 'table' and not info.err then
  local last = field_of(info, 'last-generated-id')
  local ams, aseq = parse(after)
  local lms, lseq = parse(last or '')
  if ams and lms then
    local by_ms = compare(ams, lms)
    if by_ms < 0 or (by_ms == 0 and compare(aseq, lseq) <= 0) then
      start = after
    end
  end
end
local created = redis.pcall('XGROUP', 'CREATE', key, group, start, 'MKSTREAM')
if type(created) == 'table' and created.err then
  if string.find(created.err, 'BUSYGROUP', 1, true) then
    return 0
  end
  return created
end
return 1
